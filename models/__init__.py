"""Downstream heads trained on stored features (spam, NER, ranking, image): see the roadmap in README."""
