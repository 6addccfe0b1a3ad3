"""Model pieces shared by several papers."""
