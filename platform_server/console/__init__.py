"""The operations console: a web page for organisers and staff, thin over the platform's services."""
