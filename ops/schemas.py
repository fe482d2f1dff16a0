"""Shapes of the operational endpoints: liveness, readiness."""

from __future__ import annotations

from ninja import Field, Schema


class HealthOut(Schema):
    status: str = Field(..., examples=["healthy"])
    service: str = Field(..., examples=["llm-chat-gateway"])
    version: str = Field(..., examples=["1.0.0"])
    uptime_seconds: float = Field(..., examples=[123.4])
    timestamp: str = Field(..., examples=["2026-11-26T12:00:00+00:00"])
