"""Protocol adapters: thin translations between HTTP and the service core."""
