"""The local development stack: Redis and moto servers, the local cloud, the demo and its terminal view."""
