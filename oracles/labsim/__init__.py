"""The lab simulator: ``python -m oracles.labsim`` or :class:`LabSimulator` in a thread."""
from oracles.labsim.faults import FAULT_KINDS, FaultPlan
from oracles.labsim.server import LabSimulator, LabSimulatorProcess

__all__ = ["FAULT_KINDS", "FaultPlan", "LabSimulator", "LabSimulatorProcess"]
