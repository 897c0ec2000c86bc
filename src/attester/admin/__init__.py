"""Administration: the admin HTTP API (``api.py``, described by ``openapi.py``) and
``attester admin`` (``cli.py``, on the database or through the API, ``client.py``). Both
call the service's ``Administration`` (``attester.service.operator``) through the same
operations (``operations.py``); nothing here touches SQL."""
