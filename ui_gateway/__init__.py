"""The people side of Tether: one Starlette app with WebSocket, SSE, REST and the dashboard."""
