"""Tests of pbs2p_edge.algo: the pure compression math."""
