"""paxctl: a coordination service in the spirit of ZooKeeper and Chubby, built on Multi-Paxos."""

__version__ = "0.1.0"
