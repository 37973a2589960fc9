"""Shared plumbing for device drivers and simulators: server lifecycle, faults, control channel, links, CLIs.

A device package supplies its protocol, driver, simulator behaviour and fault names; this kit
supplies the rest the same way for every device (docs/device-kit.md).
"""
