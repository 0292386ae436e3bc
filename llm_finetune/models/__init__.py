"""Base models: Hub ids, local directories, and tiny offline stand-ins built from configs."""
