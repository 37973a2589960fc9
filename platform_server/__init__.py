"""platform_server package."""
