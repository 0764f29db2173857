"""The desktop in the browser: short-lived single-use console tickets, the websocket that carries a
guest's RFB stream through the relay beside its host, and the console page."""
