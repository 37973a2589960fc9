"""Database adapters of the platform: typed models, engine set-up, repository and unit of work."""
