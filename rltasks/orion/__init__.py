"""orion"""
