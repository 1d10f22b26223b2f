"""Developer commands that are not part of the service: training and evaluating the matcher."""
