"""Serving: the BentoML service, the request contract, the lean scorer and the feedback sink."""
