"""Device twins: the device side of each wire protocol, with faults on command.

Twins import nothing of the project (in particular not ``device_drivers``): each is written
from the protocol notes, so a driver bug shows up as a disagreement instead of being
faithfully reproduced on both ends.
"""
