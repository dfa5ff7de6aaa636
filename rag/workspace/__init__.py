"""The user's daily workspace: collections, saved conversations, feedback, the document viewer."""
