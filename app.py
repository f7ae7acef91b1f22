"""activelearn's Streamlit app (`streamlit run app.py`): a thin router over activelearn/ui."""

import streamlit as st

from activelearn.ui.navigation import pages

st.set_page_config(page_title="activelearn", page_icon=":material/label:", layout="wide")
st.navigation(pages()).run()
