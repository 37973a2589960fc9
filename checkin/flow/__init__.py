"""The kiosk's check-in flow: a screen-free state machine producing view models.

It turns device results, platform answers and the expert's touches into view models (views.py),
and imports no GUI, gRPC or database code.
"""
