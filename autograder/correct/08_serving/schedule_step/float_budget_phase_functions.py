# VALID: one function per phase returning the budget left, a float budget with int(n), rows as lists [seq, n], the victim indexed as running[len(running) - 1]
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
    chunked = sched.chunk_size != math.inf

    def tokens_for(seq, budget):
        n = min(seq.num_uncomputed, sched.chunk_size, budget)
        if not chunked and n < seq.num_uncomputed:
            return 0
        return int(n)

    def grow_phase():
        growing = [s for s in sched.running if s.needs_slot]
        for seq in growing:
            if seq not in sched.running:
                continue
            ok = sched.memory.grow(seq)
            while not ok:
                victim = sched.running[len(sched.running) - 1]
                sched.preempt(victim, plan)
                if victim is seq:
                    break
                ok = sched.memory.grow(seq)
            if ok:
                seq.needs_slot = False

    def row(seq, budget):
        n = tokens_for(seq, budget)
        if n:
            plan.rows.append([seq, n])
        return budget - n

    def rows_phase(budget):
        for seq in [s for s in sched.running if s.num_uncomputed == 1]:
            budget = row(seq, budget)
        for seq in [s for s in sched.running if s.num_uncomputed > 1]:
            budget = row(seq, budget)
        return budget

    def can_add(budget):
        return budget >= 1 and len(sched.running) < sched.max_num_seqs

    def swap_phase(budget):
        while sched.swapped and can_add(budget):
            seq = sched.swapped[0]
            if not sched.memory.swap_in(seq):
                break
            sched.swapped.popleft()
            seq.needs_slot = False
            sched.running.append(seq)
            plan.swapped_in.append(seq)
            budget = row(seq, budget)
        return budget

    def admit_phase(budget):
        while not sched.swapped and sched.waiting and can_add(budget):
            seq = sched.waiting[0]
            if tokens_for(seq, budget) == 0 or not sched.memory.admit(seq):
                return
            sched.waiting.popleft()
            sched.running.append(seq)
            plan.admitted.append(seq)
            budget = row(seq, budget)

    grow_phase()
    admit_phase(swap_phase(rows_phase(float(sched.token_budget))))
    return plan
