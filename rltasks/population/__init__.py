"""Populations: many trials of one task trained in one process, with stacked networks.

``Population(members)`` trains K members of an on-policy task (ppo, a2c, pg) in lockstep
(``rltasks.population.onpolicy``); each member ends with the bits of its solo run. The room
sits between trial and tasks: trial may import it; it imports tasks and below.
"""

from rltasks.population.onpolicy import (
    CannotJoin,
    Population,
    check_members,
    lockstep_group,
    lockstep_keys,
)

__all__ = ["CannotJoin", "Population", "check_members", "lockstep_group", "lockstep_keys"]
