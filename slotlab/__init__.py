"""slotlab: study networks found inside random weights (Slot Machines, Edge-Popup, Biprop, IWR, LaPerm)."""

__version__ = "0.1.0"
