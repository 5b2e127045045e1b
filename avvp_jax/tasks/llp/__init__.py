"""Audio-visual video parsing on LLP: the task (`task.TASK`) and its evaluator."""
