"""One module per Make target (check, folds, train, oof, submit, schedule, ablate, report,
leaderboard, blend, bundle, demo), each with its `run_*` function that the CLI's table calls, and
`current`: the freshness checks they share. A stage may use another; nothing below imports one."""
