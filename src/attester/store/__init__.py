"""Storage: schema, migrations and the queries the service layer uses.

StoreError
└── (SQLAlchemy errors are wrapped at this boundary)
"""
