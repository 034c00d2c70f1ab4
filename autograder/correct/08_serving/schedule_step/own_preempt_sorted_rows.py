# VALID: calls the notebook's own preempt function, orders rows with a stable sort, reads the budget left from plan.num_tokens, while True loops
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
    for seq in list(sched.running):
        if not seq.needs_slot or seq not in sched.running:
            continue
        while True:
            if sched.memory.grow(seq):
                seq.needs_slot = False
                break
            victim = sched.running[-1]
            preempt(sched, victim, plan)  # my own preempt from the exercise above
            if victim is seq:
                break

    def left():
        return sched.token_budget - plan.num_tokens

    def size(seq):
        n = min(seq.num_uncomputed, sched.chunk_size, left())
        whole = sched.chunk_size == math.inf
        return 0 if whole and n != seq.num_uncomputed else int(n)

    def give_row(seq):
        n = size(seq)
        if n > 0:
            plan.rows.append((seq, n))

    for seq in sorted(sched.running, key=lambda s: s.num_uncomputed > 1):  # stable: decodes, then prefills
        give_row(seq)

    while True:
        if not sched.swapped or left() < 1 or len(sched.running) >= sched.max_num_seqs:
            break
        head = sched.swapped[0]
        if not sched.memory.swap_in(head):
            break
        sched.swapped.popleft()
        head.needs_slot = False
        sched.running.append(head)
        plan.swapped_in.append(head)
        give_row(head)

    if sched.swapped:
        return plan
    while sched.waiting and left() >= 1 and len(sched.running) < sched.max_num_seqs:
        head = sched.waiting[0]
        if size(head) == 0:
            break
        if not sched.memory.admit(head):
            break
        sched.running.append(sched.waiting.popleft())
        plan.admitted.append(head)
        give_row(head)
    return plan
