"""Security-suite fixtures: the fault suite's labs (one per test, every run leak-checked)."""

from tests.faults.conftest import fault_lab, make_fault_lab

__all__ = ["fault_lab", "make_fault_lab"]
