"""Scoring and what is fitted on scores: the metric table (metrics), the OOF joined and scored
(cv), post-processing fitted on the OOF (postprocess), blends (ensemble), the submission's shape
(submission) and the charts (plots). Anything fitted on the OOF is scored nested over the folds."""
