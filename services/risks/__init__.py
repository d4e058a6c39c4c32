"""Chatbot and AI risk signals."""
