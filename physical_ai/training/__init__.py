"""Training pipeline: demonstration collection, imitation learning, closed-loop evaluation."""
