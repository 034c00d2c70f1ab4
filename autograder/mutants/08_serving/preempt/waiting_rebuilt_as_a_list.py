# MISTAKE: puts the victim first by building a new list instead of changing the deque in place
# EXPECT: sched.waiting was replaced by a new list
def preempt(sched: Scheduler, seq: SequenceState, plan: StepPlan) -> None:
    """Take the running sequence `seq` off the device because memory ran out.

    `sched.preemption` says how:
    - "recompute": give all its memory back with `sched.memory.release(seq)` and forget its K/V: set
      `seq.num_computed = 0` and `seq.needs_slot = False`. Keep `seq.num_tokens`: the tokens it
      generated are part of its text, and readmitted it prefills prompt and generated tokens again.
      It goes to the **head** of `sched.waiting` (it arrived before everyone waiting there).
    - "swap": copy its K/V to host memory with `sched.memory.swap_out(seq)`; `num_computed` and
      `needs_slot` stay as they are (its K/V comes back unchanged). It goes to the **head** of
      `sched.swapped`.
    Either way: remove it from `sched.running`, add 1 to `seq.num_preemptions` and to
    `sched.num_preemptions`, and append it to `plan.preempted`. Call the memory exactly once and change
    nothing else (the other sequences, the other queues' order).
    """
    sched.running.remove(seq)
    seq.num_preemptions += 1
    sched.num_preemptions += 1
    plan.preempted.append(seq)
    if sched.preemption == "swap":
        sched.memory.swap_out(seq)
        sched.swapped.appendleft(seq)
    else:
        sched.memory.release(seq)
        seq.num_computed = 0
        seq.needs_slot = False
        sched.waiting = [seq, *sched.waiting]
