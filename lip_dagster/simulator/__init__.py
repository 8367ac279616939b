"""Local vendor simulator: Okta System Log, Slack Audit Logs, 1Password Events API and
Google Workspace Reports on one HTTP server, for tests, the demo and benchmarks.

    from lip_dagster.simulator import VendorSimulator, SimConfig, Faults

    with VendorSimulator(SimConfig(live_rate_per_s=0)) as sim:
        creds = sim.credentials()
        ...  # point adapters at sim.base_url
        assert ids_landed == {e["uuid"] for e in sim.events("okta", "logs")}

Nothing in the product imports this package.
"""

from lip_dagster.simulator.config import SimConfig
from lip_dagster.simulator.faults import Faults
from lip_dagster.simulator.server import VendorSimulator

__all__ = ["Faults", "SimConfig", "VendorSimulator"]
