"""The released EditReward models (TIGER-AI-Lab/EditReward): import their weights, score exactly as the official code.

``importer`` turns a released checkpoint + its base model folder into an editrl reward checkpoint in
``inference: official`` mode; ``inference`` builds the official inputs and runs the official passes (and a
prefix-shared way to compute the same scores for groups); ``prompts`` holds the official prompt text as data.
"""
