"""Local stand-ins for the parts of AWS that moto cannot run: the Lambda event source and the models."""
