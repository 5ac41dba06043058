"""Thin IO adapters around the core: MQTT, BLE radio, actuator, durable files."""
