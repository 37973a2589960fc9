"""Wristband-dispensing arm: line protocol, serial driver, simulator and the dispense transaction."""
