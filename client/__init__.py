"""The client side of Tollgate: the ``tollgate`` CLI (run, watch, status, result, review, cancel, trace), the demo
and the dev launcher. No service imports it; it reaches the services through Temporal, Redis and the store."""
