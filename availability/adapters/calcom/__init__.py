"""Cal.com: the HTTP API client (the ``Upstream`` port) and webhook deliveries."""

from availability.adapters.calcom.client import CalcomUpstream
from availability.adapters.calcom.webhooks import Delivery, parse_delivery, signature

__all__ = ["CalcomUpstream", "Delivery", "parse_delivery", "signature"]
