"""Integrations with other frameworks, each behind its own extra (`flowstone[django]`).

Nothing here is imported by `import flowstone`.
"""
