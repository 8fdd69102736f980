"""The TTL lab: the real cache core on a virtual clock against a simulated Cal.com.

It answers the seed analysis's question with measurements instead of
guesses: for a workload (query rates, bookings, Cal.com latency, the share
of bookings that are reported), what hit ratio, Cal.com calls a day and
stale ratio does each TTL policy give? ``availability lab`` runs it;
:mod:`.closed_form` predicts fixed TTLs so theory and simulation check each
other. :mod:`.timeskip` is the time-skipping event loop underneath, usable
by tests too.
"""

from availability.lab.closed_form import Prediction, predict
from availability.lab.policies import Policy, parse_policy
from availability.lab.simulation import Result, simulate
from availability.lab.workload import Workload

__all__ = ["Policy", "Prediction", "Result", "Workload", "parse_policy", "predict", "simulate"]
