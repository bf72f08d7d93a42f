"""Pydantic contracts shared by the starter, the workflow, the activities and the player."""
