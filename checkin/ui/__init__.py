"""The kiosk's touch UI (customtkinter): renders the flow's view models, one renderer per screen."""
