# MISTAKE: caps the running sequences at 256 when max_num_seqs is unset
# EXPECT: 300 sequences
def schedule_step(sched: Scheduler) -> StepPlan:
    """Plan one step of `sched` and return it as a new `StepPlan`; queues and memory follow the plan.

    `sched.running` is a list (oldest first); `sched.waiting` and `sched.swapped` are deques (head
    first). `sched.token_budget`, `sched.max_num_seqs` and `sched.chunk_size` are numbers, `math.inf`
    when unset (`chunk_size == math.inf` means chunked prefill is off). Four phases, in this order:

    1. **Grow.** For each running sequence with `needs_slot` (in running order): call
       `sched.memory.grow(seq)`. While it answers False, preempt the newest running sequence
       (`sched.running[-1]`) with `sched.preempt(victim, plan)` and call grow again, until grow
       answers True (then set `seq.needs_slot = False`) or `seq` itself was the victim. A sequence
       preempted earlier in this phase is skipped.
    2. **Running rows.** `budget = sched.token_budget`. The running sequences get rows: first every
       decode (`seq.num_uncomputed == 1`), then every prefill (`num_uncomputed > 1`), each group in
       running order. A row is `(seq, n)` appended to `plan.rows`, with `n = min(seq.num_uncomputed,
       sched.chunk_size, budget)`; but when chunked prefill is off a prompt runs whole or not at all,
       so n becomes 0 if it is below `num_uncomputed`. A sequence with n = 0 gets no row. Each row
       takes n from the budget.
    3. **Swapped in.** While `sched.swapped` is not empty, `budget >= 1` and fewer than
       `sched.max_num_seqs` sequences run: call `sched.memory.swap_in(head)`; if it answers False,
       stop. Otherwise pop the head, set its `needs_slot = False`, append it to `sched.running` and
       `plan.swapped_in`, and give it a row as in phase 2.
    4. **Admit.** Only if `sched.swapped` is empty now (swapped sequences came first and go first):
       while `sched.waiting` is not empty, `budget >= 1` and fewer than `sched.max_num_seqs` run,
       look at the head. If its row would get n = 0 (phase 2's rule), or `sched.memory.admit(head)`
       answers False, stop: first come, first served, so nobody behind the head is admitted either.
       Otherwise pop it, append it to `sched.running` and `plan.admitted`, and give it a row as in
       phase 2 (computed after `admit`, which may have set `num_computed` for a prefix-cache hit).
    """
    plan = StepPlan()

    def row_size(seq, budget):
        n = min(seq.num_uncomputed, sched.chunk_size, budget)
        if sched.chunk_size == math.inf and n < seq.num_uncomputed:
            return 0  # a whole prompt that does not fit what is left
        return int(n)

    def add_row(seq, budget):
        n = row_size(seq, budget)
        if n:
            plan.rows.append((seq, n))
        return budget - n

    for seq in list(sched.running):  # 1. grow
        if seq not in sched.running or not seq.needs_slot:
            continue
        while not sched.memory.grow(seq):
            victim = sched.running[-1]
            sched.preempt(victim, plan)
            if victim is seq:
                break
        else:
            seq.needs_slot = False

    budget = sched.token_budget  # 2. decodes first, then prefill chunks
    decodes = [s for s in sched.running if s.num_uncomputed == 1]
    prefills = [s for s in sched.running if s.num_uncomputed > 1]
    for seq in decodes + prefills:
        budget = add_row(seq, budget)

    while sched.swapped and budget >= 1 and len(sched.running) < sched.max_num_seqs:  # 3. swapped
        seq = sched.swapped[0]
        if not sched.memory.swap_in(seq):
            break
        sched.swapped.popleft()
        seq.needs_slot = False
        sched.running.append(seq)
        plan.swapped_in.append(seq)
        budget = add_row(seq, budget)

    while not sched.swapped and sched.waiting and budget >= 1 and len(sched.running) < min(256, sched.max_num_seqs):
        seq = sched.waiting[0]  # 4. admit, first come first served
        if not row_size(seq, budget) or not sched.memory.admit(seq):
            break
        sched.waiting.popleft()
        sched.running.append(seq)
        plan.admitted.append(seq)
        budget = add_row(seq, budget)
    return plan
