"""The cluster's web app for the cluster tier: `python app.py` in cluster mode, as a user runs it."""
from swarm import Server


class ClusterApp(Server):
    """The web app of a test cluster (no libtorrent session): on 127.0.0.1 and a free port, with
    the cluster's settings (tests/cluster_nodes.cluster_settings) in its environment."""

    def __init__(self, folder, tracker, settings):
        folder.mkdir(parents=True, exist_ok=True)
        super().__init__(folder, tracker, **settings)

    def page(self, path="/"):
        """A page's HTML."""
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as response:
            return response.read().decode()
