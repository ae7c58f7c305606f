"""kenornir: join many KubeEdge edge nodes at once, keadm batch on Nornir."""

__version__ = "0.1.0"
