"""Threads other than the main one at a move: those that may stay behind
(their library starts them again on the target) and the refusal, naming
thread and place, for the others."""
