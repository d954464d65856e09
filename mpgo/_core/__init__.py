"""The single-process core: goroutines, scheduler, timers, local channels.

Knows nothing of processes; the runtime plugs in through `_sched.Hooks` and
`_chan.HOOKS`.
"""
