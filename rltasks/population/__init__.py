"""Populations: many trials of one task trained in one process, with stacked networks.

``Population(members)`` trains K members of ppo, a2c, pg (``rltasks.population.onpolicy``)
or dqn (``rltasks.population.replay``) in lockstep; each member ends with the bits of its
solo run (``rltasks.population.population``). The room sits between trial and tasks: trial
may import it; it imports tasks and below.
"""

from rltasks.population.population import (
    CannotJoin,
    Population,
    check_members,
    joins,
    lockstep_group,
    lockstep_keys,
)

__all__ = ["CannotJoin", "Population", "check_members", "joins", "lockstep_group", "lockstep_keys"]
