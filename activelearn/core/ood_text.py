"""What the OOD score means, in one sentence for the UI (torch-free: the UI imports it)."""

OOD_SCORE_MEANING = (
    "ood_score (0 to 1, higher = more likely out of distribution) averages where the sample "
    "ranks in the pool by its distance to the nearest labeled sample and by how unsure the "
    "model is of its class."
)
