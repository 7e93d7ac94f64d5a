"""Front-ends shared by training, export checks and deployment (one copy of each)."""
