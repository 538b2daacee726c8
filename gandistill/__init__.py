"""gandistill: compress GAN generators by knowledge distillation."""
__version__ = "0.1.0"
