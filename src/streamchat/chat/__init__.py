"""What the chat steps share and are not steps themselves: ownership, the reply quota, reply telemetry."""
