"""torch.optim's update rules racing on 2-D surfaces."""
