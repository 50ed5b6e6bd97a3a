FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY tether ./tether
COPY tether_cli ./tether_cli
COPY broker_bridge ./broker_bridge
COPY devices ./devices
COPY ui_gateway ./ui_gateway
COPY mosquitto ./mosquitto
RUN pip install --no-cache-dir .
EXPOSE 8080
CMD ["tether", "--help"]
